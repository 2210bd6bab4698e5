# Dataflow (Runner v2) GPU worker image: Beam's own Python SDK image, TensorFlow with its CUDA libraries,
# this package with its pinned dependencies, and the converted MusiCNN models.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/musicnn-beam:0.1.0 .
#   python -m pipeline ... --runner DataflowRunner --sdk_container_image IMAGE \
#       --dataflow_service_options "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"
#
# The Beam version here must equal the apache-beam pin in pyproject.toml (tests/test_packaging.py checks it).
FROM apache/beam_python3.11_sdk:2.77.0

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The CUDA and cuDNN user-space libraries come as nvidia-* wheels; the host provides only the driver.
RUN pip install "tensorflow[and-cuda]==2.21.0"

# The package and its pins (pyproject.toml is the one place they are pinned). Non-editable: the source
# copy is not needed afterwards.
COPY . /tmp/musicnn-beam-src
RUN pip install /tmp/musicnn-beam-src && rm -rf /tmp/musicnn-beam-src

# Convert the models at build time: musicnn 0.1.0's checkpoints ship only in its wheel, which is read,
# never installed (its own pins are from 2019).
RUN pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn \
 && python -m zipfile -e /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl /tmp/musicnn/wheel \
 && python -m models.convert --original /tmp/musicnn/wheel/musicnn --out /opt/musicnn-beam/models \
 && rm -rf /tmp/musicnn \
 && python -c "import apache_beam, tensorflow; assert apache_beam.__version__ == '2.77.0', apache_beam.__version__"

ENV MUSICNN_BEAM_MODELS=/opt/musicnn-beam/models

# ENTRYPOINT stays Beam's /opt/apache/beam/boot (from the base image): it starts the SDK worker.
