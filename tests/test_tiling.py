"""ovsam_core.hosts.tiling: the region of interest embedded for a prompt of a large image."""
from ovsam_core import Region, plan_region


def test_whole_plane_and_stride():
    r = plan_region((), 1000, 800, (0, 0, 0, 0), whole=True, max_read=2048)
    assert (r.y0, r.y1, r.x0, r.x1, r.step) == (0, 1000, 0, 800, 1)
    big = plan_region((), 5000, 3000, (0, 0, 0, 0), whole=True, max_read=2048)
    assert big.step == 3 and big.level == 0 and big.level_stride == 3  # ceil(5000 / 2048)


def test_roi_around_points_is_reused_while_prompts_stay_inside():
    r = plan_region((2,), 20000, 20000, (5000.5, 7000.5, 5000.5, 7000.5), whole=False, roi_size=1024)
    assert (r.height, r.width, r.plane, r.step) == (1024, 1024, (2,), 1)
    assert r.contains(5000.5, 7000.5, 5000.5, 7000.5)
    again = plan_region((2,), 20000, 20000, (5100.5, 7100.5, 5100.5, 7100.5), whole=False, roi_size=1024, cached=r)
    assert again is r
    other_plane = plan_region((3,), 20000, 20000, (5100.5, 7100.5, 5100.5, 7100.5), whole=False, cached=r)
    assert other_plane is not r and other_plane.plane == (3,)
    edge = plan_region((), 20000, 20000, (3.5, 3.5, 3.5, 3.5), whole=False, roi_size=1024)
    assert (edge.y0, edge.x0) == (0, 0)  # clamped to the image


def test_large_box_reads_from_the_coarsest_fitting_pyramid_level():
    ext = (0.0, 0.0, 20000.0, 20000.0)  # a box over the whole 20k image: side 30k clipped to 20k
    flat = plan_region((), 20000, 20000, ext, whole=False, max_read=2048)
    assert flat.step == 10 and flat.level == 0
    pyr = plan_region((), 20000, 20000, ext, whole=False, max_read=2048, level_factors=(1, 2, 4, 8, 16))
    assert pyr.level == 3 and pyr.step == 8 and pyr.level_stride == 1  # 8 <= 10 < 16
    assert isinstance(pyr, Region)
