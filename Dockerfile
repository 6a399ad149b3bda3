FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY actors ./actors
COPY messages ./messages
COPY marketsim ./marketsim
COPY sniper ./sniper
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT []
