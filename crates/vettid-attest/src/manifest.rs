//! PCR manifest (to come)
