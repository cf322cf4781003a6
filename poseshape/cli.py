def main(argv=None):
    print("poseshape")
