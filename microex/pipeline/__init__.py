"""microex.pipeline"""
