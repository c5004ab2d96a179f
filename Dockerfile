# upcheck: the URL-monitor daemon (SPEC.md), as run on ECS Fargate.
# Build: docker build -t upcheck .    Run: docker run -p 8080:8080 -e UPCHECK_TARGETS=s3://... upcheck

# Pinned to an exact Python release on Debian bookworm, so a rebuild gets the same interpreter.
# Not yet pinned by digest: a tag can be re-pushed, a digest cannot, but no digest of this tag
# could be pulled or confirmed from here (public Dockerfiles name several different ones, as the
# tag was rebuilt over time). To pin: `docker buildx imagetools inspect
# python:3.11.7-slim-bookworm` and append `@sha256:<index digest>` (README "Container").
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric uid/gid, so the ECS task definition can name it and file ownership is stable.
RUN groupadd --system --gid 10001 upcheck \
    && useradd --system --uid 10001 --gid upcheck --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin upcheck

WORKDIR /app

# Dependencies in their own layer: it is rebuilt only when the lock changes. Every package,
# transitive ones included, is pinned with the sha256 of its files (requirements.lock, made
# from requirements.txt): pip refuses anything else, and --no-deps installs nothing unlisted.
COPY requirements.lock .
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock

# The code, owned by root and so read-only for the daemon; only results/ (the default local
# results file) is writable by it.
COPY daemon/ ./daemon/
RUN mkdir results && chown upcheck:upcheck results

USER 10001:10001

ENV UPCHECK_LISTEN=0.0.0.0:8080
EXPOSE 8080

# Python's standard library only (no curl in a slim image). Follows UPCHECK_LISTEN's port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('UPCHECK_LISTEN', ':8080').rsplit(':', 1)[1]; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=4).status == 200 else 1)"]

# Exec form: the daemon is PID 1 and receives SIGTERM itself, so it can stop probing and flush
# CloudWatch and the results file before exiting (SPEC.md: within 10 s; ECS waits 30 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "daemon"]
