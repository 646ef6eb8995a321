"""microex.perf"""
