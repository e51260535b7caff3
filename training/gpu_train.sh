#!/usr/bin/env bash
# Train a recipe's folds, its final all-subject model and a same-seed repeat of fold 0, all at once on one GPU
# under Keras' JAX backend (each is small; together they keep the GPU busy), from a training.cache file. What
# is trained is the recipe (training/recipes/, the shipped one unless RECIPE names another), as for `make train`;
# afterwards, on a CPU under TensorFlow, `make train RUN=<the same folder>` predicts the held-out folds from the
# exact frames, calibrates, scores and writes model/ (docs/training.md).
#
#   CACHE=runs/train-96x128.npz RUN=runs/gpu96 COPY_TO=runs/gpu96-out bash training/gpu_train.sh
#
# Finished weights are copied to COPY_TO as they appear (fold<k>.keras, final.keras, repeat0.keras), with the
# logs (logs.tar.gz) and a JAX-vs-TensorFlow check file (check.npz) at the end; LIMIT bounds the wall time
# (seconds). Overrides of the recipe, each optional: EPOCHS (the fold and final models' cosine epochs),
# SWA_EPOCHS (0 for no averaging tail) and SWA_LR; EXTRA adds options to every run (e.g. EXTRA='--val-fraction
# 0.12 --patience 20' for early stopping). FINAL=0 skips the final model. A run finished on the CPU must be
# given the same recipe and overrides.
set -u
CACHE=${CACHE:?a training.cache .npz file}
RUN=${RUN:-runs/gpu96}
COPY_TO=${COPY_TO:-runs/gpu96-out}
LIMIT=${LIMIT:-450}
common=(--data "$CACHE" --train-only)
[ -n "${RECIPE:-}" ] && common+=(--recipe "$RECIPE")
[ -n "${EPOCHS:-}" ] && common+=(--epochs "$EPOCHS" --final-epochs "$EPOCHS")
[ -n "${SWA_EPOCHS:-}" ] && common+=(--swa-epochs "$SWA_EPOCHS")
[ -n "${SWA_LR:-}" ] && common+=(--swa-lr "$SWA_LR")
# shellcheck disable=SC2206  # EXTRA is a list of options, split on purpose
common+=(${EXTRA:-})
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
# The recipe's fold count (and a recipe or override error, before anything starts).
last_fold=$(python3 -c 'import sys
from training.recipe import RecipeError
from training.train import run_config
try:
    print(run_config(sys.argv[1:]).recipe.folds - 1)
except RecipeError as exc:
    sys.exit(f"error: {exc}")' --out "$RUN" "${common[@]}") || exit 2
mkdir -p "$RUN" "$RUN-repeat" "$COPY_TO"
start=$(date +%s)

# Fold 0 first writes the run's normalisation constants; the others start once they exist and reuse them.
python3 -m training.train --out "$RUN" "${common[@]}" --only-fold 0 >"$RUN/fold0.log" 2>&1 &
until [ -s "$RUN/normalisation.json" ] || ! kill -0 $! 2>/dev/null; do sleep 1; done
for k in $(seq 1 "$last_fold"); do
    python3 -m training.train --out "$RUN" "${common[@]}" --only-fold $k >"$RUN/fold$k.log" 2>&1 &
done
[ "${FINAL:-1}" = 1 ] && python3 -m training.train --out "$RUN" "${common[@]}" --only-final >"$RUN/final.log" 2>&1 &
python3 -m training.train --out "$RUN-repeat" "${common[@]}" --only-fold 0 >"$RUN/repeat.log" 2>&1 &

copy_finished() {
    for k in $(seq 0 "$last_fold"); do
        [ -f "$RUN/fold$k/fold.json" ] && [ ! -f "$COPY_TO/fold$k.keras" ] && cp "$RUN/fold$k/best.keras" "$COPY_TO/fold$k.keras"
    done
    [ -f "$RUN/final/final.json" ] && [ ! -f "$COPY_TO/final.keras" ] && cp "$RUN/final/best.keras" "$COPY_TO/final.keras"
    [ -f "$RUN-repeat/fold0/fold.json" ] && [ ! -f "$COPY_TO/repeat0.keras" ] && cp "$RUN-repeat/fold0/best.keras" "$COPY_TO/repeat0.keras"
    return 0
}
while [ -n "$(jobs -rp)" ] && [ $(( $(date +%s) - start )) -lt "$LIMIT" ]; do
    sleep 15
    copy_finished
    echo "[$(( $(date +%s) - start )) s] $(for f in "$RUN"/*.log; do printf '%s: %s | ' "$(basename "$f" .log)" "$(grep -c '^Epoch' "$f")"; done)"
done
jobs -rp | xargs -r kill
wait
copy_finished
weights=$COPY_TO/final.keras
[ -f "$weights" ] || weights=$COPY_TO/fold0.keras
[ -f "$weights" ] && JAX_DEFAULT_MATMUL_PRECISION=highest python3 -m training.crosscheck save \
    --model "$weights" --data "$CACHE" --out "$COPY_TO/check.npz"
tar czf "$COPY_TO/logs.tar.gz" --exclude='*.keras' --exclude=backup "$RUN" "$RUN-repeat"
tail -n 3 "$RUN"/*.log
echo "total $(( $(date +%s) - start )) s"
