#!/usr/bin/env bash
# download_models.sh: fetch every model in models.yaml (and the Triton kernels their quantised
# paths load) into the directory the pod mounts at /models (LLMUX-DL-001/002).
#
# Runs `llmux download` inside the llmux image by default, so the host needs only podman; set
# LLMUX_BIN to a host install instead (e.g. LLMUX_BIN="$HOME/venv/bin/llmux").
# Idempotent: finished models are skipped without network access; a run that was interrupted
# keeps the files it finished. Gated models (cohere-transcribe) need a Hugging Face token in
# ~/.cache/huggingface/token (`hf auth login`) whose account accepted the model's terms.
# Extra arguments go to `llmux download` (e.g. --only cohere-transcribe, --verify).
set -euo pipefail
set -E

# ---- site settings: the defaults are the reference host; override with the environment -----
IMAGE="${LLMUX_IMAGE:-localhost/llmux:latest}"
DATA_DIR="${LLMUX_DATA_DIR:-$HOME/.local/share/llmux_pod}"
MODELS_DIR="${LLMUX_MODELS_DIR:-$DATA_DIR/models}"
CONFIG_DIR="${LLMUX_CONFIG_DIR:-$DATA_DIR/config}"
HF_TOKEN_FILE="${LLMUX_HF_TOKEN_FILE:-$HOME/.cache/huggingface/token}"
CTR_UID="${LLMUX_CTR_UID:-10001}"  # the image's non-root user (Containerfile LLMUX_UID)
LLMUX_BIN="${LLMUX_BIN:-}"          # empty: run inside the image
# ----------------------------------------------------------------------------------------------

SELF="$(basename "$0")"

die() { printf '%s: error: %s\n' "$SELF" "$*" >&2; exit 1; }
on_error() {
    local status=$? line=$1 command=$2
    printf '%s: error: line %s: "%s" failed with status %s\n' "$SELF" "$line" "$command" "$status" >&2
    exit "$status"
}
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

[[ -f "$CONFIG_DIR/models.yaml" ]] || die "$CONFIG_DIR/models.yaml is missing (see deploy/README.md)"
[[ -f "$HF_TOKEN_FILE" ]] \
    || printf '%s: warning: no token at %s; gated models will fail (hf auth login)\n' "$SELF" "$HF_TOKEN_FILE" >&2
mkdir -p "$MODELS_DIR"

if [[ -n "$LLMUX_BIN" ]]; then
    # A host install reads the token from ~/.cache/huggingface/token by itself.
    # shellcheck disable=SC2086  # LLMUX_BIN may be a command with arguments ("python -m llmux")
    exec $LLMUX_BIN download --config "$CONFIG_DIR" --models-dir "$MODELS_DIR" "$@"
fi

command -v podman >/dev/null || die "podman not found on PATH (or set LLMUX_BIN to a host install of llmux)"
podman image exists "$IMAGE" \
    || die "image $IMAGE not found: podman build --format docker -t $IMAGE -f Containerfile ."

token_args=()
if [[ -f "$HF_TOKEN_FILE" ]]; then
    token_args=(--volume "$HF_TOKEN_FILE:/run/secrets/hf_token:ro" --env HF_TOKEN_PATH=/run/secrets/hf_token)
fi

# The image is offline by default (HF_HUB_OFFLINE=1); this one run is allowed out. keep-id makes
# the files belong to the host user.
exec podman run --rm \
    --userns "keep-id:uid=$CTR_UID,gid=$CTR_UID" \
    --security-opt label=disable \
    --env HF_HUB_OFFLINE=0 \
    --volume "$MODELS_DIR:/models" \
    --volume "$CONFIG_DIR:/config:ro" \
    "${token_args[@]}" \
    "$IMAGE" download --config /config --models-dir /models "$@"
