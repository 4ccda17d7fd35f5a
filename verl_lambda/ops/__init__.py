"""Pure math of the two methods (torch only, no verl import)."""
