"""Search AlexNet variants: space, engines, trial workers, the CLI, export and predict."""

import os
import platform

from search.devices import ask_for_onednn

# Set before TensorFlow loads: its C++ start-up chatter quiet unless the user asked for it, and
# oneDNN's kernels where TensorFlow would leave them off (see search.devices).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ask_for_onednn(platform.machine())
