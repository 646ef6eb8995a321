"""microex.core"""
