"""Reporting: pure plotting functions (plots), example images saved with each evaluation
(examples) and the self-contained HTML report built from saved files alone (html)."""
