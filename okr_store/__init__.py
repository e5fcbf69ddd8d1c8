"""okr_store"""
