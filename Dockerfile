# Dataflow (Runner v2) GPU worker image: Beam's own Python SDK image, TensorFlow with its CUDA libraries,
# this package with its pinned dependencies, and the converted MusiCNN models.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/musicnn-beam:0.1.0 .
#   python -m pipeline ... --runner DataflowRunner --sdk_container_image IMAGE \
#       --dataflow_service_options "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
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
 && python -m musicnn_beam.models.convert --original /tmp/musicnn/wheel/musicnn --out /opt/musicnn-beam/models \
 && rm -rf /tmp/musicnn \
 && python -c "import apache_beam, tensorflow; assert apache_beam.__version__ == '2.77.0', apache_beam.__version__"

ENV MUSICNN_BEAM_MODELS=/opt/musicnn-beam/models

# The same image is also the Flex Template's launcher image (`make flex-template`; README, "From a
# bucket of audio to a Dataflow GPU job"): one image to build, push and keep in step with the workers.
# A launch runs Google's template launcher, copied here from its Python 3.11 launcher image, which runs
# FLEX_TEMPLATE_PYTHON_PY_FILE with the launch's parameters: our CLI writes the job, Dataflow runs it on
# this image. This is Google's pattern for one image in both roles (their sample Dockerfiles for it keep
# Beam's boot as the ENTRYPOINT, as here): a launch starts the launcher binary itself, the workers start
# the ENTRYPOINT. The tag is pinned, as `latest` would change the launcher under us; the tags and their
# notes: https://cloud.google.com/dataflow/docs/reference/flex-templates-base-images
# launch.py gets a folder of its own: Python puts the script's folder first on sys.path, and the
# converted models' folder /opt/musicnn-beam/models must not stand beside it as a `models` package.
COPY --from=gcr.io/dataflow-templates-base/python311-template-launcher-base:flex_templates_base_image_release_20240628_RC00 /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher
COPY deploy/dataflow/launch.py /opt/musicnn-beam/flex-template/launch.py
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/opt/musicnn-beam/flex-template/launch.py

# ENTRYPOINT stays Beam's /opt/apache/beam/boot (from the base image): it starts the SDK worker.
