"""microex.marketdata"""
