//! Prefect's first tutorial flow: `hello_world`, then a parameterized `say_hello(name)`.
use weft::prelude::*;

#[task]
fn hello_world() {
    println!("Hello world!");
}

#[task]
fn say_hello(name: String) -> String {
    let greeting = format!("Hello, {name}!");
    println!("{greeting}");
    greeting
}

#[flow(name = "my first flow!")]
async fn my_first_flow(name: String) -> String {
    hello_world();
    let greeting = say_hello(name)?;
    greeting
}

#[tokio::main]
async fn main() {
    for name in ["world", "Marvin"] {
        let run = my_first_flow(name.to_owned()).await;
        println!("{}", run.state);
        println!("returned: {:?}", run.result);
    }
    println!("{}", my_first_flow::graph().to_dot());
}
