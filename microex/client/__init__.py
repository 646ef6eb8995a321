"""microex.client"""
