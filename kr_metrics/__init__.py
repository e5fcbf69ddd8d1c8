"""kr_metrics"""
