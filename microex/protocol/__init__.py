"""microex.protocol"""
