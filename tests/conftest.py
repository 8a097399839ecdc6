import os
import sys

# tests/ holds helper modules (trainer_helpers) that spawned DDP workers import.
sys.path.insert(0, os.path.dirname(__file__))
