pub fn g() -> crate::DeeAlias {
    crate::DeeAlias
}
