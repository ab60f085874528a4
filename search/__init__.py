"""Search AlexNet variants: space, engines, trial workers, the CLI, export and predict."""

import os

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it; set before TF loads.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
