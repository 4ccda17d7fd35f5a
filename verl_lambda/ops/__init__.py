"""Pure math of the two methods (torch only, no verl import).

Layer 1 (math).
"""
