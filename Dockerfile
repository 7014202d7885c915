# The Vigil image: `vigil worker` (the default) or `vigil forward` against external Kafka,
# ClickHouse and Alertmanager. Lint: hadolint Dockerfile (a test).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY schemas schemas
COPY streams streams
COPY sinks sinks
RUN pip wheel --no-cache-dir -c requirements.lock --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --uid 10001 --user-group --create-home vigil \
 && mkdir -p /var/lib/vigil && chown 10001:10001 /var/lib/vigil
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
WORKDIR /home/vigil
# the PII scanner's pattern database (name dictionaries: ~2.5 s to compile), compiled once
# into ~/.cache/vigil so a pod loads it in a fraction of a second
RUN python -c "from streams.detectors.pii.scanner import Scanner; Scanner(b'image')"
ENV VIGIL_MODE=production \
    VIGIL_WEB_HOST=0.0.0.0 \
    VIGIL_WEB_PORT=6066 \
    VIGIL_DATA_DIR=/var/lib/vigil \
    PYTHONUNBUFFERED=1
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:6066/healthz', timeout=2)"]
ENTRYPOINT ["vigil"]
CMD ["worker"]
