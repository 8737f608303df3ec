def build_report(results_dir, hardware):
    return None
