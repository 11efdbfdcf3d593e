# The Skytide app image: one image, every role; compose.yaml picks the role by command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# Production: a missing REDIS_URL, DATABASE_URL, GUPSHUP_API_URL or model key stops start-up,
# naming it; nothing falls back to an embedded server, the simulator or the offline model.
ENV SKYTIDE_ENV=production

WORKDIR /app
# Every dependency at the version and hash of requirements.lock (`make lock`), in a layer of its
# own, before the code: a change to the code alone does not reinstall them (2 to 3 minutes).
# With Supabase Storage for media, add supabase to the lock. Never the dev extra: the embedded
# Redis and PostgreSQL binaries are for development only.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY ops ./ops
COPY storage ./storage
COPY consumers ./consumers
COPY ingress ./ingress
COPY graph ./graph
# `skytide eval` measures the configured model on the conversation scenarios and phrasings,
# the rules part and the held-out part.
COPY tests/conversations/*.toml tests/conversations/phrasings.txt ./tests/conversations/
COPY tests/conversations/held_out/*.toml ./tests/conversations/held_out/
# The project itself, without resolving anything else.
RUN pip install --no-cache-dir --no-deps . && useradd --create-home --uid 10001 skytide \
    && mkdir -p /data/media && chown skytide /data/media

USER skytide
# The ingress's webhooks on HTTP_PORT (8080), the only port to publish; every process, the
# ingress too, serves /metrics and /readyz on METRICS_PORT (production refuses an ingress
# without one, so the image sets it).
ENV METRICS_PORT=9100
EXPOSE 8080 9100
CMD ["skytide", "run"]
