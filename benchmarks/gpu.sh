#!/usr/bin/env bash
# The benchmarks that need a GPU, in one go (issues 3 and 5), each under its own time limit so that
# one failure does not cost the others. Writes *_gpu.json into the folder given (default
# benchmarks/results). Usage: bash benchmarks/gpu.sh [output-folder]
set -u
out=${1:-benchmarks/results}
py=${PYTHON:-python}
export PYTHONUNBUFFERED=1 POSEGUARD_DEVICE=cuda
mkdir -p "$out"
failed=0
run() {  # run <seconds> <command...>
    echo "== $(date -u +%T) ${*:2}"
    timeout "$1" "${@:2}" || { echo "!! exit $? from: ${*:2}"; failed=1; }
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.csv" || failed=1
# Paper size, the paper's settings (512×768, 24 frames, 30 DDIM steps, guidance 3.5), bf16 weights.
run 200 "$py" benchmarks/bench_generate.py --profiles paper --device cuda --dtype bfloat16 \
    --images 8 --video-frames 24 --repeats 2 --output "$out/generate_paper_gpu.json"
# Table 2 at paper size: original, control copy, LoRA merged, LoRA unmerged, per denoising step
# and per (shortened) generation.
run 150 "$py" benchmarks/bench_merged_speed.py --profile paper --unit denoiser-step --rounds 30 \
    --device cuda --dtype bfloat16 --output "$out/merged_speed_paper_gpu.json"
run 220 "$py" benchmarks/bench_merged_speed.py --profile paper --unit generation --steps 5 --rounds 8 \
    --device cuda --dtype bfloat16 --output "$out/merged_speed_paper_gpu_generation.json"
# The small profile's base training and sampling on the GPU (its own fp32 settings).
run 170 "$py" benchmarks/bench_train.py --profile small --steps 40 --video-steps 40 \
    --output "$out/train_small_gpu.json"
run 60 "$py" benchmarks/bench_generate.py --profiles tiny small --device cuda \
    --output "$out/generate_gpu.json"
exit $failed
