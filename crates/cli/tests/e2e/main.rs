//! The end-to-end tests: the CLI, the Lambda functions and deploy against the AWS emulator
//! (`scripts/test.sh` starts it), one module per area. One test binary, so the AWS SDK is
//! linked once, not once per area.

mod support;

mod accounts;
mod budget;
mod clean;
mod configure;
mod copies;
mod corpus;
mod deploy;
mod drills;
mod faults;
mod functions;
mod iam;
mod lease;
mod locks;
mod policies;
mod real_account;
mod release;
mod replication;
mod runtime;
mod snapshot;
mod status;
mod template;
mod vault;
