"""The validation stage: data suites per sync, number suites per day, and the gate's verdicts.

Great Expectations is imported only inside the functions that run a suite
(validation.expectations.import_gx), never at module level.
"""
