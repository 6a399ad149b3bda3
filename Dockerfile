FROM python:3.11-slim
WORKDIR /app
# Exact versions and hashes from the lock; the project itself without resolving anything.
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY runtime ./runtime
COPY actors ./actors
COPY messages ./messages
COPY marketsim ./marketsim
COPY sniper ./sniper
RUN pip install --no-cache-dir --no-deps --no-build-isolation .
USER nobody
ENTRYPOINT []
