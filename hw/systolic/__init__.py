"""The systolic-array engine (SPEC engine ``systolic``): an R x C grid of multiply-accumulate
cells, weight-stationary or output-stationary, for batches of input vectors."""
