"""microex.app"""
