def main():
    import nnaccel.hw, nnaccel.gen
    print("ok", nnaccel.hw.__file__)
