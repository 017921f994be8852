#!/usr/bin/env bash
# create_pod_llmux.sh: create the rootless Podman pod that runs llmux and hand it to systemd
# (LLMUX-ARCH-002/004/005, LLMUX-CFG-002, LLMUX-INT-006).
#
# Kischdle pattern: create pod, create container, generate systemd units, enable service.
# Run it as the service user (llm); install it at /home/llm/bin/create_pod_llmux.sh.
# Safe to run again: it stops and replaces the service, the pod and the units, so a second
# run applies changed settings (a new image tag, other paths) and otherwise changes nothing.
#
# The units are generated with --new: systemd creates the pod and container on start and
# removes them on stop, so the pod created below is only the template the units are made from.
set -euo pipefail
set -E  # the ERR trap below fires inside functions too

# ---- site settings: the defaults are the reference host; override with the environment -----
POD_NAME="${LLMUX_POD_NAME:-llmux_pod}"
CTR_NAME="${LLMUX_CTR_NAME:-llmux_ctr}"
IMAGE="${LLMUX_IMAGE:-localhost/llmux:latest}"
DATA_DIR="${LLMUX_DATA_DIR:-$HOME/.local/share/llmux_pod}"
MODELS_DIR="${LLMUX_MODELS_DIR:-$DATA_DIR/models}"
CONFIG_DIR="${LLMUX_CONFIG_DIR:-$DATA_DIR/config}"
STATE_DIR="${LLMUX_STATE_DIR:-$DATA_DIR/data}"  # llmux's usage database (written: not read-only)
BIND_ADDR="${LLMUX_BIND_ADDR:-127.0.0.1}"
HOST_PORT="${LLMUX_PORT:-8081}"
GPU_DEVICE="${LLMUX_GPU_DEVICE:-nvidia.com/gpu=all}"
CTR_UID="${LLMUX_CTR_UID:-10001}"        # the image's non-root user (Containerfile LLMUX_UID)
STOP_TIMEOUT="${LLMUX_STOP_TIMEOUT:-60}"  # seconds llmux gets to drain and unload on stop
UNIT_DIR="${LLMUX_UNIT_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user}"
# ----------------------------------------------------------------------------------------------

CTR_PORT=8081
SERVICE="pod-${POD_NAME}.service"
SELF="$(basename "$0")"

log() { printf '%s: %s\n' "$SELF" "$*"; }
die() { printf '%s: error: %s\n' "$SELF" "$*" >&2; exit 1; }
on_error() {
    local status=$? line=$1 command=$2
    printf '%s: error: line %s: "%s" failed with status %s\n' "$SELF" "$line" "$command" "$status" >&2
    exit "$status"
}
# Any failing command ends the script, naming the command, its line and its status.
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

preflight() {
    local cmd
    for cmd in podman systemctl loginctl; do
        command -v "$cmd" >/dev/null || die "$cmd not found on PATH"
    done
    [[ "$(id -u)" != 0 ]] || die "run this as the service user (llm), not as root: the pod is rootless"
    [[ -d "$MODELS_DIR" ]] || die "models directory $MODELS_DIR is missing: run download_models.sh first"
    local f
    for f in models.yaml api_keys.yaml; do
        [[ -f "$CONFIG_DIR/$f" ]] || die "$CONFIG_DIR/$f is missing (see deploy/README.md, step 4)"
    done
    podman image exists "$IMAGE" \
        || die "image $IMAGE not found: podman build --format docker -t $IMAGE -f Containerfile ."
}

remove_previous() {
    if [[ -f "$UNIT_DIR/$SERVICE" ]]; then
        log "stopping and disabling the existing $SERVICE"
        systemctl --user disable --now "$SERVICE"
    fi
    if podman pod exists "$POD_NAME"; then
        log "removing the existing pod $POD_NAME"
        podman pod rm --force "$POD_NAME"
    fi
}

create_pod() {
    log "creating pod $POD_NAME on $BIND_ADDR:$HOST_PORT"
    # keep-id maps the host user (llm) to the image's user, so files that llm owns (a 0600
    # api_keys.yaml included) are readable inside, and nothing runs as root in or out.
    podman pod create \
        --name "$POD_NAME" \
        --publish "$BIND_ADDR:$HOST_PORT:$CTR_PORT" \
        --userns "keep-id:uid=$CTR_UID,gid=$CTR_UID"
}

create_container() {
    log "creating container $CTR_NAME from $IMAGE"
    mkdir -p "$STATE_DIR"
    # label=disable: SELinux hosts otherwise deny the CDI device nodes and the bind mounts.
    podman create \
        --pod "$POD_NAME" \
        --name "$CTR_NAME" \
        --device "$GPU_DEVICE" \
        --security-opt label=disable \
        --volume "$MODELS_DIR:/models:ro" \
        --volume "$CONFIG_DIR:/config:ro" \
        --volume "$STATE_DIR:/var/lib/llmux" \
        --stop-timeout "$STOP_TIMEOUT" \
        "$IMAGE"
}

install_units() {
    log "generating systemd units in $UNIT_DIR"
    mkdir -p "$UNIT_DIR"
    local here="$PWD"
    cd "$UNIT_DIR"  # --files writes the units to the working directory
    podman generate systemd --new --files --name "$POD_NAME"
    cd "$here"
    # `systemctl --user reload`: llmux reads api_keys.yaml again on SIGHUP. The unit's main
    # process is conmon, which does not pass signals on: send it to the container itself.
    mkdir -p "$UNIT_DIR/container-$CTR_NAME.service.d"
    printf '[Service]\nExecReload=/usr/bin/podman kill --signal HUP %s\n' "$CTR_NAME" \
        > "$UNIT_DIR/container-$CTR_NAME.service.d/reload.conf"
    # The units create their own pod on start; the template would only block the name.
    podman pod rm --force "$POD_NAME"
    systemctl --user daemon-reload
    systemctl --user enable --now "$SERVICE"
}

enable_linger() {
    # Without linger the user's services stop at logout and do not start at boot.
    local user
    user="$(id -un)"
    if [[ "$(loginctl show-user "$user" --property=Linger --value 2>/dev/null || true)" != "yes" ]]; then
        log "enabling linger for $user (start at boot, keep running after logout)"
        loginctl enable-linger "$user"
    fi
}

main() {
    preflight
    remove_previous
    create_pod
    create_container
    install_units
    enable_linger
    log "done: $SERVICE is enabled and started; check with"
    log "  systemctl --user status $SERVICE"
    log "  curl -s http://$BIND_ADDR:$HOST_PORT/health"
}

main "$@"
