# Driftline service image: `driftline up` by default (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY driftline ./driftline
COPY collector ./collector
COPY detectors ./detectors
COPY alerts ./alerts
COPY dashboards ./dashboards
RUN pip install . && useradd --system --uid 10001 driftline
USER driftline
ENTRYPOINT ["driftline"]
CMD ["up"]
