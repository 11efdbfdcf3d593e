"""`skytide contact export|erase`: a patient's data, exported or erased (docs/operations.md)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import datetime, timezone

from consumers.understanding import build_store
from graph.checkpoints import checkpointer_on
from ops.app.wiring import open_deps, run_async
from ops.logs import mask
from ops.settings import Settings
from ops.system import services
from storage import erasure, privacy, privacy_export
from storage.db import migrate


def run(settings: Settings, args: argparse.Namespace) -> int:
    return run_async(cmd_contact(settings, args))


async def cmd_contact(settings: Settings, args: argparse.Namespace) -> int:
    try:
        phone = privacy.normalize_phone(args.phone)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    async with services(settings) as settings, open_deps(settings) as deps:
        await migrate(deps.pool)
        now = datetime.fromtimestamp(deps.clock(), timezone.utc)
        person = await privacy.find(deps.pool, args.org, phone)
        if args.contact_command == "export":
            document = await privacy_export.export(deps.pool, deps.redis, person, now=now)
            text = json.dumps(document, indent=2, ensure_ascii=False)
            if args.out:
                # Health data: readable by its owner only, from the moment it exists.
                fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text + "\n")
                print(f"wrote {args.out}", file=sys.stderr)
            else:
                print(text)
            return 0
        if not args.yes:
            state = await privacy.redis_state(deps.redis, person)
            print(
                json.dumps(
                    {
                        "phone": phone,
                        "found": person.found,
                        "would_erase": {
                            "contacts": len(person.contact_ids),
                            "chats": len(person.identity_ids),
                            "messages": len(person.message_ids),
                            "appointments_anonymised": len(person.appointment_ids),
                            "media_files": len(person.media_paths),
                            "redis": state.counts(),
                        },
                    },
                    indent=2,
                )
            )
            print("nothing erased: add --yes to erase", file=sys.stderr)
            return 2
        saver = await checkpointer_on(deps.redis, settings.checkpoint_ttl_min)
        result = await erasure.erase(
            deps.pool,
            deps.redis,
            build_store(deps),
            person,
            now=now,
            forget_thread=saver.adelete_thread,
        )
        # The record that the request was carried out (Ley 1581 asks the clinic to show it),
        # without the phone it was about.
        logging.getLogger("skytide.privacy").info(
            "erased contact %s of organization %s: %s",
            mask(phone),
            args.org,
            json.dumps({**result.as_dict(), "phone": mask(phone)}),
        )
        print(json.dumps(result.as_dict(), indent=2))
        return 0
