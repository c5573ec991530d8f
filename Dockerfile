# mpifarmer in a container: Python, mpi4py with MPICH (the mpich wheel) and mpifarmer,
# installed exactly as the README says (pip install . of this repository).
#
#   docker build -t mpifarmer .                     # or: podman build -t mpifarmer .
#   docker run --rm mpifarmer                        # prints mpifarmer --help
#   docker run --rm -v "$PWD:/work" -w /work mpifarmer tasks.txt -n 4
#
# As a Shifter or podman-hpc image (NERSC), name the command, since Shifter does not use
# ENTRYPOINT (not tried here: this repository's machines have no container engine):
#   srun --mpi=pmi2 shifter --image=you/mpifarmer:0.1.0 mpifarmer tasks.txt
# tests/unit/test_dockerfile.py keeps the Python version and the install command in
# step with pyproject.toml and the README.

# The oldest Python that pyproject.toml's requires-python allows (filelock>=4.2.1 needs
# 3.11), so that the image also checks that floor; Debian bookworm, like the test machines.
FROM python:3.11-slim-bookworm

# No pip cache in the image; no warning about pip running as root.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# Only what the package build needs: the metadata (pyproject.toml names README.md
# as its long description) and the package itself.
WORKDIR /src/mpifarmer
COPY pyproject.toml README.md ./
COPY mpifarmer ./mpifarmer
RUN pip install .

# Tasks run in the directory the farmer is started in; mount your data there.
WORKDIR /work
ENTRYPOINT ["mpifarmer"]
CMD ["--help"]
