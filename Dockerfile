# remediator's image: the wheel and its virtualenv are built in one stage, and only the
# virtualenv (plus the example rules) is copied into a clean copy of the same base.
#
#   docker build -t remediator:0.1.0 --build-arg SOURCE_URL=<repository URL> .
#   docker run --read-only -p 9095:9095 \
#     -v "$PWD/token:/etc/remediator/webhook/token:ro" remediator:0.1.0
#
# The default CMD serves the example rules on 0.0.0.0:9095 with SQLite state in the
# /var/lib/remediator volume. `serve` refuses to start without a bearer token, so the CMD
# reads it from /etc/remediator/webhook/token (mount a file with one token per line there;
# the chart mounts its Secret at the same path). Without a cluster (no --kubeconfig, not in
# a pod) every Kubernetes action is claimed and audited as dry-run. The chart replaces the
# CMD with its own arguments; mount other rules at /etc/remediator/rules.

# Both stages use the same base, by digest: the virtualenv's bin/python is a symlink to the
# base's /usr/local/bin/python3, so it only works on the interpreter it was built against,
# and a digest (unlike a tag) cannot change under a rebuild. Check it, and move it, with
# `docker buildx imagetools inspect python:3.11-slim-bookworm`.
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91 AS builder

WORKDIR /src
# Only what the wheel is made of: pyproject.toml names README.md as the long description.
COPY pyproject.toml README.md ./
COPY remediator/ remediator/
# The virtualenv gets no pip (--without-pip): the builder's pip installs into it
# (--python), so the runtime image carries no installer. The dependencies are the wheel's
# own requirements from PyPI; no dev extras. pip compiles the bytecode at install time,
# so nothing needs writing under /opt/remediator at run time.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/remediator \
    && python -m pip --python /opt/remediator/bin/python install --no-cache-dir /wheels/remediator-*.whl

FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# pyproject.toml's version; the release build passes the one it tags.
ARG VERSION=0.1.0
# The repository the image is built from; set by the release build.
ARG SOURCE_URL=""
# pyproject.toml declares no license yet: NOASSERTION is SPDX's word for "not stated".
LABEL org.opencontainers.image.title="remediator" \
      org.opencontainers.image.description="Alertmanager webhook receiver that classifies alerts, runs bounded remediations and escalates the rest." \
      org.opencontainers.image.licenses="NOASSERTION" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.version="${VERSION}"

# A fixed UID/GID, so the chart's runAsUser/fsGroup (10001) and the files a volume holds
# agree with the image; a system account with no home and no login shell. The state
# directory is created owned by it: a fresh Docker volume mounted there copies the owner.
RUN groupadd --system --gid 10001 remediator \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin remediator \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/remediator

# Root-owned and read-only to the service: the code it runs cannot be changed by it.
COPY --from=builder /opt/remediator /opt/remediator
# The example rules, so the default CMD starts; the chart mounts its ConfigMap over them.
COPY rules/ /etc/remediator/rules/

# No .pyc written beside read-only code; logs unbuffered to the container's stderr;
# HOME on the /tmp volume, as anything that looks for ~ (kubeconfig's cache) must find a
# writable place on a read-only root filesystem.
ENV PATH=/opt/remediator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

# The only writable paths with a read-only root filesystem: the SQLite state and the
# temporary files (the validation pool's forkserver socket lives in $TMPDIR, /tmp).
WORKDIR /var/lib/remediator
VOLUME ["/var/lib/remediator", "/tmp"]

USER 10001:10001
EXPOSE 9095

# Exec form: PID 1 is remediator itself (SIGTERM reaches it and starts the drain), and no
# shell is needed at run time.
ENTRYPOINT ["remediator"]
CMD ["serve", "--listen", "0.0.0.0:9095", "--rules", "/etc/remediator/rules", "--token-file", "/etc/remediator/webhook/token", "--state", "sqlite:////var/lib/remediator/remediator.db"]
