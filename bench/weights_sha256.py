"""Record the SHA-256 of the official weights files: download each into the Keras cache and print
the `SHA256` block of `keras_vit/pretrained.py` to paste (needs network; the files total ~6 GB).

    python bench/weights_sha256.py [--names vit_ti16.augreg_in21k_ft_in1k,...]

A digest is only ever recorded from the file itself: the registry lists none it has not seen.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    from keras_vit import pretrained

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", default=",".join(pretrained.WEIGHTS), help="comma-separated weights names")
    args = parser.parse_args(argv)
    digests = {}
    for name in args.names.split(","):
        path = pretrained.fetch_weights(name)
        digests[pretrained.get_weights(name)["path"]] = pretrained.file_sha256(path)
        print(f"{name}: {os.path.getsize(path):,} bytes, SHA-256 {digests[pretrained.get_weights(name)['path']]}",
              file=sys.stderr)
    print("SHA256 = {")
    for path, digest in sorted(digests.items()):
        print(f'    "{path}":\n        "{digest}",')
    print("}")


if __name__ == "__main__":
    main()
