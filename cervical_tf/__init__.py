"""cervical-tf: find and classify cervical cells in Pap smear images with Faster R-CNN."""
