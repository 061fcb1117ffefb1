"""Make the harness modules (`hx_policy`, `hx_runtime`) and the test helper
`hxrun` importable from the tests."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
