"""microex.gateway"""
