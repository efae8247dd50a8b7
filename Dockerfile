FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORTAL_VAR_DIR=/app/var
WORKDIR /app

COPY pyproject.toml README.md ./
COPY portal portal
COPY certificates certificates
COPY cloudflare cloudflare
# The emulator, for a demo with CLOUDFLARE_EMULATOR=true; production with a token never imports it.
COPY cloudflare_emulator cloudflare_emulator
COPY templates templates
COPY static static
COPY manage.py gunicorn.conf.py ./
# collectstatic only reads settings: the stand-ins are named so that start-up accepts the empty build environment.
RUN pip install --no-cache-dir . \
    && DEBUG=false SECRET_KEY=collectstatic-only CLOUDFLARE_EMULATOR=true EMAIL_CONSOLE=true \
       python manage.py collectstatic --noinput \
    && useradd --system --home /app portal && mkdir -p /app/var && chown portal /app/var

USER portal
EXPOSE 8000
CMD ["gunicorn", "portal.wsgi:application", "--config", "gunicorn.conf.py"]
