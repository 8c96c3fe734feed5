//! Depends on c through `$crate::` in an exported macro.
pub struct Dee;
pub struct Other;

#[macro_export]
macro_rules! make_cee {
    () => {
        $crate::c::Cee
    };
}
