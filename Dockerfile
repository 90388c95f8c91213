# One image for every HealthStream service; docker-compose.yml picks the command.
FROM python:3.11-slim
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY services ./services
COPY schemas ./schemas
RUN uv sync --frozen --no-dev
ENV PATH="/app/.venv/bin:$PATH" HS_SCHEMA_DIR=/app/schemas
# named volumes mounted here take this ownership: the services' user writes keys and state
RUN mkdir -p /keys /vitals-state && chown 10001 /keys /vitals-state
USER 10001
