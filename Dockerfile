# syntax=docker/dockerfile:1
# The grokray image: Ray 2.60.0 on Python 3.11 (the rayproject/ray image, user ray), PyTorch
# 2.13.0, grokray and its studies. One Dockerfile, two builds (k8s/README.md):
#
#   CPU (Ray head, CPU workers, MLflow server, bucket job):
#     docker build -t grokray:0.1.0-py311 .
#   CUDA (GPU workers):
#     docker build -t grokray:0.1.0-py311-gpu \
#       --build-arg RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# Ray and Python must be the same on every node of a cluster: change RAY_IMAGE only to another
# tag of Ray 2.60.0 / py311 (pyproject.toml pins ray==2.60.0).
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311
FROM ${RAY_IMAGE}

# PyTorch first and pinned, from the index of the build wanted: CPU wheels by default (PyPI's
# Linux wheel is the multi-GB CUDA build). The CUDA wheels carry their own CUDA libraries; the
# GPU node needs only an NVIDIA driver new enough for that CUDA release.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir "torch==2.13.0" --index-url "${TORCH_INDEX_URL}"

# grokray as a regular install (the source is not kept), against the Ray of the base image and
# the torch above (2.13.0+cpu satisfies torch==2.13.0). boto3: the MLflow server's S3 artifact
# store and the bucket job run from this image too.
COPY --chown=1000:100 pyproject.toml README.md /tmp/grokray-src/
COPY --chown=1000:100 grokray /tmp/grokray-src/grokray
RUN pip install --no-cache-dir /tmp/grokray-src "boto3>=1.34" \
    && rm -rf /tmp/grokray-src \
    && python -c "import grokray, ray, torch; assert ray.__version__ == '2.60.0', ray.__version__; print('grokray ok: ray', ray.__version__, 'torch', torch.__version__)"

# The studies, in the working directory: the RayJob's entrypoint names them relative to it
# (python -m grokray run studies/critical_size.py).
RUN mkdir -p /home/ray/grokray
WORKDIR /home/ray/grokray
COPY --chown=1000:100 studies ./studies

# ray:users, as in the Ray images; numeric, so that Kubernetes' runAsNonRoot can check it
USER 1000:100
