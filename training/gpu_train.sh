#!/usr/bin/env bash
# Train the shipped configuration's 5 folds, its final all-subject model and a same-seed repeat of fold 0, all
# at once on one GPU under Keras' JAX backend (each is small; together they keep the GPU busy), from a
# training.cache file. This is how the shipped weights were trained (docs/training.md); afterwards, on a CPU
# under TensorFlow, `make train`'s command with the same --out folder predicts the held-out folds from the
# exact frames, calibrates, scores and writes model/.
#
#   CACHE=runs/train-96x128.npz RUN=runs/gpu96 COPY_TO=runs/gpu96-out bash training/gpu_train.sh
#
# Finished weights are copied to COPY_TO as they appear (fold<k>.keras, final.keras, repeat0.keras), with the
# logs (logs.tar.gz) and a JAX-vs-TensorFlow check file (check.npz) at the end; LIMIT bounds the wall time;
# SWA_EPOCHS and SWA_LR (default 5 and 2e-3, the shipped recipe; SWA_EPOCHS=0 for none) set the
# stochastic-weight-averaging tail; EXTRA adds options to every run (e.g. EXTRA='--val-fraction 0.12
# --patience 20' for early stopping); FINAL=0 skips the final model.
set -u
CACHE=${CACHE:?a training.cache .npz file}
RUN=${RUN:-runs/gpu96}
COPY_TO=${COPY_TO:-runs/gpu96-out}
EPOCHS=${EPOCHS:-60}
SWA_EPOCHS=${SWA_EPOCHS:-5}
SWA_LR=${SWA_LR:-2e-3}
LIMIT=${LIMIT:-450}
common=(--data "$CACHE" --height 96 --width 128 --filters 16 --depth 4 --epochs "$EPOCHS" --val-fraction 0
        --final-epochs "$EPOCHS" --swa-epochs "$SWA_EPOCHS" --swa-lr "$SWA_LR" --train-only ${EXTRA:-})
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
mkdir -p "$RUN" "$RUN-repeat" "$COPY_TO"
start=$(date +%s)

# Fold 0 first writes the run's normalisation constants; the others start once they exist and reuse them.
python3 -m training.train --out "$RUN" "${common[@]}" --only-fold 0 >"$RUN/fold0.log" 2>&1 &
until [ -s "$RUN/normalisation.json" ] || ! kill -0 $! 2>/dev/null; do sleep 1; done
for k in 1 2 3 4; do
    python3 -m training.train --out "$RUN" "${common[@]}" --only-fold $k >"$RUN/fold$k.log" 2>&1 &
done
[ "${FINAL:-1}" = 1 ] && python3 -m training.train --out "$RUN" "${common[@]}" --only-final >"$RUN/final.log" 2>&1 &
python3 -m training.train --out "$RUN-repeat" "${common[@]}" --only-fold 0 >"$RUN/repeat.log" 2>&1 &

copy_finished() {
    for k in 0 1 2 3 4; do
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
