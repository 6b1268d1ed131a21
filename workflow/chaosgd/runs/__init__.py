"""The run machinery: training loops, data and batch order, lockstep ensembles,
perturbations, checkpoints and recovery, and the files jobs read and write.
"""
