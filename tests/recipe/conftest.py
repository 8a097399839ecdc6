import os
import sys

# recipe_helpers.py lives beside the tests.
sys.path.insert(0, os.path.dirname(__file__))
