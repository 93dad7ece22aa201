// The extension is built for one interpreter at a time; pyo3's `Py_3_x`
// cfgs let the code use an API that exists only from that version on
// (`PyDict_Pop` on 3.13) instead of a private one that 3.13 removed.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
