"""Dataset import (Datumaro), label schema, splitting and conversion to MMDetection's COCO input."""
