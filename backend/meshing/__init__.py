"""Turning geometry into a Blender-ready textured mesh.

- ``texturing``: texture by projection of the photo onto any UV-mapped mesh, mirror fill on the
  symmetric templates, inpainting of what is left.
"""
